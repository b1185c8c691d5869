-- wf1_commit_step: stores a step's record, under the run's lease.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token
-- ARGV[3]  step field ('<occurrence>:<name>')
-- ARGV[4]  step record (JSON text, opaque); stored as '<server ms>|<record>'
-- ARGV[5]  '1' when the step has a compensation (flagged on the run, so a failure knows to compensate)
-- Reply: { 1 } stored, or { 0, reason } when the caller no longer holds the run (stale token,
--        expired lease, run canceled): the caller must stop executing the run.
-- Repeating the call with the same arguments stores the same record again.
local function commit_step(keys, argv)
  local root = keys[1]
  local id, token, field, record = argv[1], argv[2], argv[3], argv[4]
  local now = now_ms()
  local f, reason = check_lease(run_key(root, id), token, now)
  if not f then return { 0, reason } end
  rcall('HSET', steps_key(root, id), field, string.format('%d', now) .. '|' .. record)
  if argv[5] == '1' then rcall('HSET', run_key(root, id), 'comp', 1) end
  return { 1 }
end

redis.register_function('wf1_commit_step', commit_step)
