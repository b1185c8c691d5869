-- wf1_commit_step: stores a step's record, under the run's lease.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token
-- ARGV[3]  step field ('<occurrence>:<name>')
-- ARGV[4]  state: S succeeded, F failed, C compensated
-- ARGV[5]  step record (JSON text, opaque); stored as '<server ms>|<state>|<record>'
-- ARGV[6]  '1' when the step has a compensation (flagged on the run, so a failure knows to compensate)
-- ARGV[7]  'if-open': store only if the step has no record or a waiting one (a timeout racing a delivery)
-- ARGV[8]  id of a child run this step started ('' = none): indexed so that cancel reaches it
-- Reply: { 1, server ms } stored (the time kept with the record); { 2, stored record } when 'if-open' found the step already resolved;
--        { 0, reason } when the caller no longer holds the run (stale token, expired lease, canceled):
--        the caller must stop executing the run.
-- Repeating the call with the same arguments stores the same record again.
-- `now`: the server time, when wf1_many has read it once for all the calls it carries.
local function commit_step(keys, argv, now)
  local root = keys[1]
  local id, token, field, state, record = argv[1], argv[2], argv[3], argv[4], argv[5]
  now = now or now_ms()
  local held, reason = holds_lease(run_key(root, id), token, now)
  if not held then return { 0, reason } end
  if argv[7] == 'if-open' then
    local current = rcall('HGET', steps_key(root, id), field)
    if current and record_state(current) ~= 'W' then return { 2, current } end
  end
  store_record(root, id, field, ms(now), state, record)
  if argv[6] == '1' then rcall('HSET', run_key(root, id), 'comp', '1') end
  if argv[8] and argv[8] ~= '' then rcall('SADD', children_key(root, id), argv[8]) end
  return { 1, now }
end

redis.register_function('wf1_commit_step', commit_step)
