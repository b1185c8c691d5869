-- wf1_move_version: moves a run that has not finished to another version (retryRun(id, { onVersion:
-- 'current' }) on a queued, scheduled, waiting or running run): a pinned run stranded on a version that
-- no live worker serves is then claimed by the workers of `version`. See includes/00-versions.lua.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] the version to move it to (as the client checked it: no ':', no '*')
-- Reply: { 1, status, new 'v' } moved (or already there), { 0, status } when the run has finished (a
--        failed or canceled run is moved by wf1_retry) or does not exist ('unknown').
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do
local function move_version(keys, argv)
  local root, id, version = keys[1], argv[1], argv[2]
  local run = run_key(root, id)
  local f = rcall('HMGET', run, 'st', 'wf')
  if not f[1] then return { 0, 'unknown' } end
  if FINAL[f[1]] then return { 0, f[1] } end
  local old = rcall('HGET', run, 'v')
  local new = move_run_version(root, id, run, f[2], f[1], version)
  if old ~= new then history(root, id, now_ms(), 'version-moved', { from = old and string.gsub(old, '^%*', '') or '', to = version }) end
  return { 1, f[1], new }
end

redis.register_function('wf1_move_version', move_version)
end
