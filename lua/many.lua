-- wf1_many: several calls of one function on one shard in a single FCALL, so that the calls a process
-- makes in one event-loop turn (the step commits of many runs) cost Redis and the client one call
-- instead of one each. Each call runs as it would alone, one after the other, at one reading of the
-- server clock; the FCALL as a whole is atomic as every FCALL is.
-- (This file sorts after commit.lua: the library is assembled in file order, and the functions it
-- batches must be defined before it.)
-- KEYS[1]  shard root
-- ARGV[1]  the function: 'commit_step' (wf1_commit_step)
-- ARGV[2]  how many arguments each call has (8 for commit_step)
-- ARGV[3..] the calls' arguments, one call after the other, each as the single function takes them
--          (at most MAX_CALLS_PER_BATCH calls; more are refused before any write)
-- Reply: one reply per call, in order, each what the single function replies.
local BATCHABLE = { commit_step = commit_step }
-- Calls one batch carries at most (clients send 16): a batch's work stays bounded.
local MAX_CALLS_PER_BATCH = 256

local function many(keys, argv)
  local fn = BATCHABLE[argv[1]]
  local per_call = tonumber(argv[2])
  if not fn or not per_call or per_call < 1 or (#argv - 2) % per_call ~= 0 or (#argv - 2) / per_call > MAX_CALLS_PER_BATCH then
    return redis.error_reply('ERR wf1_many: cannot batch ' .. tostring(argv[1]) .. ' with ' .. tostring(argv[2]) .. ' arguments per call')
  end
  local replies = {}
  local call = {}
  -- One atomic call: its calls share one reading of the server clock.
  local now = now_ms()
  for first = 3, #argv, per_call do
    for i = 1, per_call do call[i] = argv[first + i - 1] end
    replies[#replies + 1] = fn(keys, call, now)
  end
  return replies
end

redis.register_function('wf1_many', many)
