-- Values a run publishes for others to read while it runs (ctx.setEvent / client.getEvent):
--   <root>:pv:<runId>  key -> value (JSON text, opaque), deleted with the run by retention (wf1_tick)
-- A publication is also a step record of the run, so that a replay finds it recorded and publishes nothing
-- again. Readers that wait for a key are told on the shard's done channel ('<root>:dv'), with the message
-- '<run id>|set': result() waiters, which look for a run id alone or '<id>|<final state>|...', ignore it.
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do

-- wf1_set_event: publishes the value of `key` for the run, under its lease, with the step record that
-- makes the publication part of the run's history.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token    ARGV[3] step field    ARGV[4] step record (JSON text, opaque)
-- ARGV[5]  key       ARGV[6] value (JSON text, opaque)
-- Reply: { 1, server ms } published; { 2, stored record } the step was recorded already (a repeated call, or
--        a replay: nothing is published again); { 0, reason } the caller no longer holds the run.
local function set_event(keys, argv)
  local root = keys[1]
  local id, token, field, record, key, value = argv[1], argv[2], argv[3], argv[4], argv[5], argv[6]
  local now = now_ms()
  local held, reason = holds_lease(run_key(root, id), token, now)
  if not held then return { 0, reason } end
  local current = rcall('HGET', steps_key(root, id), field)
  if current then return { 2, current } end
  store_record(root, id, field, ms(now), 'S', record)
  rcall('HSET', published_key(root, id), key, value)
  rcall('SPUBLISH', root .. ':dv', id .. '|set')
  return { 1, now }
end

redis.register_function('wf1_set_event', set_event)
end
