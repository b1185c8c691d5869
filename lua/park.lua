-- wf1_park: the run waits (durable sleep; later also children and events). Its lease is released and
-- no worker holds it until a timer or a hand-off wakes it.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token
-- ARGV[3]  what the run waits for (JSON text, shown as RunInfo.waitingFor)
-- ARGV[4]  wake-up time of waits already recorded: absolute ms, or '' for none
-- ARGV[5..] new sleeps to record, in pairs: step field, 'in:<ms>' (from the server's now) or 'at:<ms>'
--          (absolute). Each is stored as a step record '{"k":"sleep","s":"waiting","u":<until>}'.
-- Reply: { 1, wake-up ms or -1 } or { 0, reason } when the caller no longer holds the run.
local function park(keys, argv)
  local root = keys[1]
  local id, token = argv[1], argv[2]
  local run = run_key(root, id)
  local now = now_ms()
  local f, reason = check_lease(run, token, now)
  if not f then
    if rcall('HGET', run, 'tok') == token and reason == 'NOT_EXECUTING:waiting' then
      return { 1, tonumber(rcall('ZSCORE', root .. ':timers', id)) or -1 }
    end
    return { 0, reason }
  end
  local due = tonumber(argv[4])
  for i = 5, #argv, 2 do
    local spec = argv[i + 1]
    local amount = tonumber(string.sub(spec, 4))
    local till = amount
    if string.sub(spec, 1, 3) == 'in:' then till = now + amount end
    rcall('HSET', steps_key(root, id), argv[i],
      string.format('%d', now) .. '|{"k":"sleep","s":"waiting","u":' .. string.format('%d', till) .. '}')
    if not due or till < due then due = till end
  end
  rcall('HSET', run, 'st', 'waiting', 'wait', argv[3])
  rcall('ZREM', root .. ':leases', id)
  count_move(root, f[4], f[2], 'waiting')
  if due then schedule_timer(root, id, due) end
  history(root, id, now, 'parked', { waitingFor = argv[3], wakeAt = due })
  return { 1, due or -1 }
end

redis.register_function('wf1_park', park)
