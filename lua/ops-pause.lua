-- wf1_pause: pauses or resumes a workflow in one shard (see includes/02-paused.lua).
-- KEYS[1]  shard root
-- ARGV[1]  workflow    ARGV[2] 'pause' or 'resume'
-- Reply: 1 when the shard's flag changed, 0 when it was already so (a repeated call).
-- Resuming tells the shard's workers that its ready runs can be claimed (as an emit into an empty ready
-- set does), so they are taken at once, not at a worker's next poll.
local function pause(keys, argv)
  local root, wf, action = keys[1], argv[1], argv[2]
  if action == 'pause' then
    return rcall('SADD', paused_key(root), wf)
  elseif action == 'resume' then
    local changed = rcall('SREM', paused_key(root), wf)
    if rcall('ZCARD', ready_key(root, wf)) > 0 then notify_workers(root, 'r') end
    return changed
  end
  return redis.error_reply('ERR wf1_pause: the action is pause or resume')
end

-- wf1_pause_mark: the deployment-wide record of paused workflows, which listings read and which names the
-- shards to pause again (a pause repeated after a crash midway, or after a queue gained partitions).
-- KEYS[1]  '{<prefix>}:paused' (hash: workflow -> ms when paused)
-- ARGV[1]  workflow    ARGV[2] 'pause' or 'resume'
-- Reply: 1 when the record changed, 0 when it was already so.
local function pause_mark(keys, argv)
  if argv[2] == 'pause' then
    return rcall('HSETNX', keys[1], argv[1], ms(now_ms()))
  elseif argv[2] == 'resume' then
    return rcall('HDEL', keys[1], argv[1])
  end
  return redis.error_reply('ERR wf1_pause_mark: the action is pause or resume')
end

redis.register_function('wf1_pause', pause)
redis.register_function('wf1_pause_mark', pause_mark)
