-- wf1_progress: stores the latest progress value of a run (ctx.setProgress), under the run's lease.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token    ARGV[3] value (JSON text made by the client, opaque here)
-- Reply: { 1 } stored; { 0, reason } when the caller no longer holds the run (as wf1_commit_step).
-- The value replaces the previous one in the run hash ('pg'); a retryRun clears it.
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do
local MAX_PROGRESS_BYTES = 4096

local function progress(keys, argv)
  local root, id, token, value = keys[1], argv[1], argv[2], argv[3]
  if not value or #value > MAX_PROGRESS_BYTES then
    return redis.error_reply('ERR wf1_progress: a progress value of at most ' .. MAX_PROGRESS_BYTES .. ' bytes')
  end
  local run = run_key(root, id)
  local held, reason = holds_lease(run, token, now_ms())
  if not held then return { 0, reason } end
  rcall('HSET', run, 'pg', value)
  return { 1 }
end

redis.register_function('wf1_progress', progress)
end
