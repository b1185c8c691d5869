-- New executions made from an existing run: continue-as-new (wf1_continue), a fork on today's code
-- (wf1_fork, wf1_fork_more) and a retry that forgets the records from a step on (wf1_forget, then wf1_retry).
--
-- A chain of runs made by continue-as-new lives in one shard: the new run's id is made by the client in
-- the old run's shard (same queue and partition), so the finish of one and the creation of the next are
-- one call, on one slot. Fields: 'cn' the run this one continued as, 'cf' the run it continued from,
-- 'ch' the chain's first run (on every run after the first), 'cl' the chain's latest run (on the first,
-- while it exists), so that a handle of the first run finds the live one in one read. A fork has 'frk' (the
-- run it was forked from) and, while its records are still being copied, 'fcp'.
-- Flow control (includes/01-flow.lua): the successor of a continue-as-new and a fork keep the flow key and
-- spec of the run they come from ('fk', 'fq'), and take a slot of that key as a new emit of it would
-- (flow_enqueue): they live in that run's shard, which is the key's. The key is not computed again from
-- the new input: that one may belong to another shard, which a chain or a fork cannot move to.
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do

-- wf1_continue: the run ends as succeeded, continued as a new run of the same workflow with `input` and no
-- step records; a parent waiting for the run waits for the new one.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token    ARGV[3] the new run's id (in this shard)
-- ARGV[4]  the new run's input (JSON text, opaque)    ARGV[5] retention of a succeeded run in ms
-- ARGV[6]  n: step records committed with it (at most MAX_RECORDS_PER_CALL, see wf1_complete)
-- ARGV[7..6+2n] those records, in pairs: field, record (stored as '<server ms>|S|<record>')
-- Reply: { 1, new run id } (also when this exact call was already applied), or { 0, reason }.
local function continue_as_new(keys, argv)
  local root = keys[1]
  local id, token, new_id, input = argv[1], argv[2], argv[3], argv[4]
  local run = run_key(root, id)
  local now = now_ms()
  local steps = tonumber(argv[6]) or 0
  if steps > MAX_RECORDS_PER_CALL then
    return redis.error_reply('ERR wf1_continue: ' .. steps .. ' step records in one call; commit all but ' .. MAX_RECORDS_PER_CALL .. ' before it (wf1_commit_step)')
  end
  local f, reason = read_under_lease(run, token, now, 'wf', 'dl', 'pf', 'hn', 'q', 'pri', 'par', 'pr', 'ch', 'cn', 'fk', 'fq')
  if reason then
    -- a resent call that was applied: the run continued under this token
    if reason == 'NOT_EXECUTING:succeeded' and f[1] == token and f[13] then return { 1, f[13] } end
    return { 0, reason }
  end
  local new_run = run_key(root, new_id)
  if rcall('EXISTS', new_run) == 1 then
    return redis.error_reply('ERR wf1_continue: run ' .. new_id .. ' exists already; make a new id')
  end
  local wf, status, deadline, waiting_field, implied, queue, priority, parent, parent_root, head =
    f[4], f[2], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12] or id
  local fkey, fspec = f[14], f[15]
  local now_text = ms(now)
  if steps > 0 then
    local fields, stamp = {}, now_text .. '|S|'
    for i = 7, 6 + 2 * steps, 2 do
      fields[#fields + 1] = argv[i]
      fields[#fields + 1] = stamp .. argv[i + 1]
    end
    rcall('HSET', steps_key(root, id), unpack(fields))
  end
  -- the run that ends: succeeded without an output of its own; its parent (if one waits) is the new run's
  rcall('HSET', run, 'st', 'succeeded', 'fa', now_text, 'cn', new_id)
  if waiting_field then rcall('HDEL', run, 'pf') end
  finish_run(root, id, wf, status, 'succeeded', now, argv[5], deadline, nil)
  history(root, id, now, 'continued-as-new', { runId = new_id }, nil, implied or false)
  history(root, id, now, 'succeeded', nil, nil, false)

  -- the new run, queued at once
  local fields = { 'wf', wf, 'q', queue, 'st', 'queued', 'in', input, 'att', '1', 'ca', now_text, 'cf', id, 'ch', head }
  if priority and tonumber(priority) ~= 0 then fields[#fields + 1] = 'pri'; fields[#fields + 1] = priority end
  if parent then fields[#fields + 1] = 'par'; fields[#fields + 1] = parent end
  if waiting_field then
    fields[#fields + 1] = 'pf'; fields[#fields + 1] = waiting_field
    fields[#fields + 1] = 'pr'; fields[#fields + 1] = parent_root
    -- several parents wait: their hash moves with the chain (one key, same slot)
    if waiting_field == MANY_PARENTS and rcall('EXISTS', parents_key(root, id)) == 1 then
      rcall('RENAME', parents_key(root, id), parents_key(root, new_id))
    end
  end
  rcall('HSET', new_run, unpack(fields))
  count_move(root, wf, new_id, nil, 'queued')
  -- the old run's slot was given back by finish_run above: the new one queues for the key like any emit
  if fkey then
    flow_enqueue(root, new_id, wf, fkey, fspec, priority, now, now, true)
  else
    make_ready(root, new_id, wf, priority, now)
  end
  history(root, new_id, now, 'created', { status = 'queued', continuedFrom = id }, nil, false)
  -- the first run of the chain points at the live one while it is kept (it may have expired)
  if head == id then
    rcall('HSET', run, 'cl', new_id)
  elseif rcall('EXISTS', run_key(root, head)) == 1 then
    rcall('HSET', run_key(root, head), 'cl', new_id)
  end
  return { 1, new_id }
end

-- How long a fork whose records are still being copied stays 'scheduled' before it is queued anyway (its
-- client stopped between chunks: it runs from the records copied so far, a prefix in call order).
local FORK_COPY_GRACE_MS = 60000

-- wf1_fork: creates a run of the same workflow as `source`, on today's code, with copies of some of the
-- source's step records (chosen and ordered by the client, which reads them; Lua decodes none).
-- KEYS[1]  shard root (the source's shard: the fork lives there too)
-- ARGV[1]  the new run's id    ARGV[2] source run id    ARGV[3] the new run's input (JSON text, opaque)
-- ARGV[4]  '1' when more records follow (wf1_fork_more): the run waits 'scheduled' until the last chunk
-- ARGV[5]  '1' when a copied record has a compensation (the run's saga has something to unwind)
-- ARGV[6]  n: records in this call (at most FORK_RECORDS_PER_CALL)
-- ARGV[7..6+2n] field, stored record ('<ms>|<state>|<record>'), copied as they are
-- Reply: { 1, status } created, { 0, status } the run exists already (a resent call), or { 0, 'NO_SOURCE' }.
local FORK_RECORDS_PER_CALL = 500

local function copy_records(root, id, argv, at, n)
  if n == 0 then return end
  local fields = {}
  for i = at, at + 2 * n - 1 do fields[#fields + 1] = argv[i] end
  rcall('HSET', steps_key(root, id), unpack(fields))
end

local function fork(keys, argv)
  local root = keys[1]
  local id, source, input, more, comp = argv[1], argv[2], argv[3], argv[4] == '1', argv[5] == '1'
  local n = tonumber(argv[6]) or 0
  if n > FORK_RECORDS_PER_CALL then
    return redis.error_reply('ERR wf1_fork: ' .. n .. ' records in one call; send at most ' .. FORK_RECORDS_PER_CALL .. ' and the rest with wf1_fork_more')
  end
  local run = run_key(root, id)
  local existing = rcall('HGET', run, 'st')
  if existing then return { 0, existing } end
  local s = rcall('HMGET', run_key(root, source), 'wf', 'q', 'pri', 'par', 'fk', 'fq')
  if not s[1] then return { 0, 'NO_SOURCE' } end
  local now = now_ms()
  local now_text = ms(now)
  local status = more and 'scheduled' or 'queued'
  -- 'fen' 0: a claim reads the records of a run it has a fencing counter for (includes/03-claim.lua); a fork
  -- has records before its first claim
  local fields = { 'wf', s[1], 'q', s[2], 'st', status, 'in', input, 'att', '1', 'ca', now_text, 'frk', source, 'fen', '0' }
  if s[3] and tonumber(s[3]) ~= 0 then fields[#fields + 1] = 'pri'; fields[#fields + 1] = s[3] end
  if comp then fields[#fields + 1] = 'comp'; fields[#fields + 1] = '1' end
  -- 'fcp': records still on their way (see wf1_fork_more)
  if more then
    fields[#fields + 1] = 'fcp'; fields[#fields + 1] = '1'
    fields[#fields + 1] = 'due'; fields[#fields + 1] = ms(now + FORK_COPY_GRACE_MS)
    -- the source's flow key: the fork takes a slot of it when it is queued (wf1_fork_more, or its timer)
    if s[5] then
      fields[#fields + 1] = 'fk'; fields[#fields + 1] = s[5]
      fields[#fields + 1] = 'fq'; fields[#fields + 1] = s[6]
    end
  end
  rcall('HSET', run, unpack(fields))
  copy_records(root, id, argv, 7, n)
  count_move(root, s[1], id, nil, status)
  if more then
    schedule_timer(root, id, now + FORK_COPY_GRACE_MS)
  elseif s[5] then
    flow_enqueue(root, id, s[1], s[5], s[6], s[3], now, now, true)
  else
    make_ready(root, id, s[1], s[3], now)
  end
  history(root, id, now, 'created', { status = status, forkedFrom = source, records = n }, nil, false)
  return { 1, status }
end

-- wf1_fork_more: the next chunk of a fork's records.
-- KEYS[1]  shard root
-- ARGV[1]  the fork's run id    ARGV[2] '1' when this is the last chunk (the run is queued)
-- ARGV[3]  '1' when a record of this chunk has a compensation
-- ARGV[4]  n    ARGV[5..4+2n] field, stored record
-- Reply: { 1 } copied, { 0, status } when the fork is not waiting for records (already queued: a resent
--        last chunk, or its grace passed), nothing written then.
local function fork_more(keys, argv)
  local root, id = keys[1], argv[1]
  local n = tonumber(argv[4]) or 0
  if n > FORK_RECORDS_PER_CALL then
    return redis.error_reply('ERR wf1_fork_more: ' .. n .. ' records in one call; send at most ' .. FORK_RECORDS_PER_CALL)
  end
  local run = run_key(root, id)
  local f = rcall('HMGET', run, 'st', 'fcp', 'wf', 'pri', 'fk', 'fq')
  if f[1] ~= 'scheduled' or not f[2] then return { 0, f[1] or 'unknown' } end
  copy_records(root, id, argv, 5, n)
  if argv[3] == '1' then rcall('HSET', run, 'comp', '1') end
  if argv[2] == '1' then
    local now = now_ms()
    rcall('HDEL', run, 'fcp', 'due')
    rcall('HSET', run, 'st', 'queued')
    rcall('ZREM', root .. ':timers', id)
    count_move(root, f[3], id, 'scheduled', 'queued')
    if f[5] then flow_enqueue(root, id, f[3], f[5], f[6], f[4], now, now) else make_ready(root, id, f[3], f[4], now) end
  end
  return { 1 }
end

-- wf1_forget: a retry from a step: deletes step records of a failed or canceled run (the records from that
-- step on, chosen by the client, which reads them), a chunk a call; the last chunk queues the run again as
-- wf1_retry does. The client sends the chosen step's own record in the last chunk, so that a client that
-- stops between chunks can repeat the whole retry. The first chunk raises the run's step generation (the
-- '~gen' record, which the executor reads): a step executed again gets a new idempotency key.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] '1' for the first chunk    ARGV[3] '1' for the last chunk
-- ARGV[4]  the generation record's value (written by the first chunk)
-- ARGV[5..] fields to delete (at most FORK_RECORDS_PER_CALL)
-- Reply: { 1 } or { 0, status } when the run is not failed or canceled (nothing deleted).
local GENERATION_FIELD = '~gen'

local function forget(keys, argv)
  local root, id = keys[1], argv[1]
  if #argv - 4 > FORK_RECORDS_PER_CALL then
    return redis.error_reply('ERR wf1_forget: ' .. (#argv - 4) .. ' fields in one call; send at most ' .. FORK_RECORDS_PER_CALL)
  end
  local st = rcall('HGET', run_key(root, id), 'st')
  if st ~= 'failed' and st ~= 'canceled' then return { 0, st or 'unknown' } end
  local key = steps_key(root, id)
  if argv[2] == '1' then rcall('HSET', key, GENERATION_FIELD, argv[4]) end
  for i = 5, #argv do rcall('HDEL', key, argv[i]) end
  if argv[3] == '1' then return retry(keys, { id }) end
  return { 1 }
end

redis.register_function('wf1_continue', continue_as_new)
redis.register_function('wf1_fork', fork)
redis.register_function('wf1_fork_more', fork_more)
redis.register_function('wf1_forget', forget)
end
