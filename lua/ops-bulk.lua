-- Bulk actions (client.retryRuns / cancelRuns): the client picks a page of ids from a workflow's status
-- index (<root>:st:<wf>:<status>, ordered by id, so by creation time: the time window is a range of ids)
-- and sends it here; each call moves at most the runs it names (ARCHITECTURE.md section 7: no call's
-- work grows with the number of runs), and moves a run only while it is still of that workflow and in
-- that status. A call repeated, or a page sent again after a crash, moves nothing twice: a run moved
-- has left the status the call expects.
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do

-- Runs one call may name: a retry is about 15 commands, and a page of 100 took up to 5.7 ms on a loaded
-- 2-core machine (test/slow/ops-bulk.slow.spec.ts); a cancel does more (a notice to workers, the
-- children's first page, the parent's hand-off).
local BULK_RETRY_MAX = 32
local BULK_CANCEL_MAX = 16

-- wf1_retry_many: wf1_retry for each named run that is still in the expected status.
-- KEYS[1]  shard root
-- ARGV[1]  workflow    ARGV[2] expected status ('failed' or 'canceled')    ARGV[3..] run ids (at most BULK_RETRY_MAX)
-- Reply: how many runs went back to the queue.
local function retry_many(keys, argv)
  local wf, expected = argv[1], argv[2]
  if (expected ~= 'failed' and expected ~= 'canceled') or #argv - 2 > BULK_RETRY_MAX then
    return redis.error_reply('ERR wf1_retry_many: a status failed or canceled and at most ' .. BULK_RETRY_MAX .. ' run ids')
  end
  local root = keys[1]
  local moved = 0
  local one = {}
  for i = 3, #argv do
    local f = rcall('HMGET', run_key(root, argv[i]), 'st', 'wf')
    if f[1] == expected and f[2] == wf then
      one[1] = argv[i]
      if retry(keys, one)[1] == 1 then moved = moved + 1 end
    end
  end
  return moved
end

-- wf1_cancel_many: wf1_cancel for each named run that is still in the expected status.
-- KEYS[1]  shard root
-- ARGV[1]  workflow    ARGV[2] expected status (scheduled, queued, running or waiting)
-- ARGV[3]  error (JSON text of the CanceledError)    ARGV[4] retention of a canceled run in ms
-- ARGV[5]  '1' when the workflow has @OnFailure (as wf1_cancel's ARGV[4])
-- ARGV[6..] run ids (at most BULK_CANCEL_MAX)
-- Reply: { how many were canceled, then per canceled run: { id, children (first page), hand-off or {},
--          cursor of the next page of children } } (as wf1_cancel's reply, with the id first)
local CANCELABLE = { scheduled = true, queued = true, running = true, waiting = true }
local function cancel_many(keys, argv)
  local wf, expected = argv[1], argv[2]
  if not CANCELABLE[expected] or #argv - 5 > BULK_CANCEL_MAX then
    return redis.error_reply('ERR wf1_cancel_many: a status scheduled, queued, running or waiting and at most ' .. BULK_CANCEL_MAX .. ' run ids')
  end
  local root = keys[1]
  local reply = { 0 }
  local one = { '', argv[3], argv[4], argv[5] }
  for i = 6, #argv do
    local f = rcall('HMGET', run_key(root, argv[i]), 'st', 'wf')
    if f[1] == expected and f[2] == wf then
      one[1] = argv[i]
      local r = cancel(keys, one)
      if r[1] == 1 then
        reply[1] = reply[1] + 1
        reply[#reply + 1] = { argv[i], r[2], r[3], r[4] }
      end
    end
  end
  return reply
end

redis.register_function('wf1_retry_many', retry_many)
redis.register_function('wf1_cancel_many', cancel_many)
end
