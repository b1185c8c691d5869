-- wf1_complete: the run succeeded.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token    ARGV[3] output (JSON text, opaque)
-- ARGV[4]  retention of a succeeded run in ms
-- ARGV[5]  n: how many succeeded steps are committed with the completion (absent = 0; at most MAX_RECORDS_PER_CALL)
-- ARGV[6..5+2n] those steps, in pairs: field, record (JSON text, stored as '<server ms>|S|<record>'). The
--          last step's result and the run's output land together, so a one-step run finishes in one
--          call after its claim. (A succeeded run is never compensated: no compensation flag is needed.)
-- ARGV[6+2n..] optional: a claim that refills the slot this run frees, with wf1_claim's arguments
--          (worker id, how many, lease ms, claim id, damaged-run retention, workflow specs).
-- Reply: { 1 } done (also when this exact call was already applied), or { 0, reason }. When the run is a
--        child whose parent lives in another shard, the reply carries the hand-off to deliver there:
--        { 1, parent root, parent id, parent step field, state, record, message id } (see wf1_deliver, wf1_ack).
--        With a claim the reply is { 1, { hand-off fields } or {}, { server now, run, run, ... } } (runs as
--        in wf1_claim); the claim is made only when the completion is. A claim asking for flat entries
--        (its count ends with 'f') gets it flat: { 1, k, k hand-off fields, server now, runs as flat
--        entries of wf1_claim }.
-- Step records one completion carries at most (clients of build 48 on send at most 64): refused before any
-- write, so that a completion never does work proportional to a run's size.
local MAX_RECORDS_PER_CALL = 1000

local function complete(keys, argv)
  local root = keys[1]
  local id, token = argv[1], argv[2]
  local run = run_key(root, id)
  local now = now_ms()
  local steps = argv[5] == '0' and 0 or tonumber(argv[5]) or 0
  if steps > MAX_RECORDS_PER_CALL then
    return redis.error_reply('ERR wf1_complete: ' .. steps .. ' step records in one call; commit all but ' .. MAX_RECORDS_PER_CALL .. ' before it (wf1_commit_step)')
  end
  local claim_at = 6 + 2 * steps
  local claiming = argv[claim_at] ~= nil
  -- Only what a completion uses is read. 'par' and 'pr' (the parent and its shard) matter only when a
  -- parent waits for the run ('pf'), and are read then.
  local f, reason = read_under_lease(run, token, now, 'wf', 'dl', 'pf', 'hn')
  local wf, status, deadline, waiting_field, implied = f[4], f[2], f[5], f[6], f[7]
  local handoff, now_text, handover
  if reason then
    if not (reason == 'NOT_EXECUTING:succeeded' and f[1] == token) then return { 0, reason } end
  else
    now_text = ms(now)
    if steps > 0 then
      local fields, stamp = {}, now_text .. '|S|'
      for i = 6, claim_at - 1, 2 do
        fields[#fields + 1] = argv[i]
        fields[#fields + 1] = stamp .. argv[i + 1]
      end
      rcall('HSET', steps_key(root, id), unpack(fields))
    end
    -- After an implied creation and claim, the success is implied too (see history).
    if implied == '2' then
      rcall('HSET', run, 'st', 'succeeded', 'out', argv[3], 'fa', now_text, 'hn', '3')
    else
      rcall('HSET', run, 'st', 'succeeded', 'out', argv[3], 'fa', now_text)
    end
    finish_run(root, id, wf, status, 'succeeded', now, argv[4], deadline, argv[3])
    if implied ~= '2' then history(root, id, now, 'succeeded', nil, nil, implied or false) end
    -- Only a run whose parent waits for it ('pf') has anyone to tell: spares the lookup for the others.
    if waiting_field then
      local parent = rcall('HMGET', run, 'par', 'pr')
      -- a parent in this shard that this completion wakes may go to the slot it refills
      handover = claiming and parent[2] == root and takes_over(root, argv, claim_at) or nil
      handoff = notify_parent(root, id, wf, 'S', argv[3], now, parent[1], waiting_field, parent[2], now_text, handover)
    end
  end
  if claiming then
    if claim_entry_format(argv[claim_at + 1]) == 'f' then
      local reply = { 1, handoff and #handoff or 0 }
      if handoff then
        for i = 1, #handoff do reply[2 + i] = handoff[i] end
      end
      reply[#reply + 1] = now
      claim_runs(root, argv, claim_at, now, reply, now_text, handover)
      return reply
    end
    local claimed = { now }
    claim_runs(root, argv, claim_at, now, claimed, nil, handover)
    return { 1, handoff or {}, claimed }
  end
  if handoff then return { 1, unpack(handoff) } end
  return { 1 }
end

-- wf1_fail: an attempt of the run failed.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token    ARGV[3] error (JSON text, opaque)
-- ARGV[4]  what happens next:
--          'retry'    a new attempt starts after ARGV[5] ms (0 = at once); the lease is released
--          'finalize' the failure is final and the worker that holds the lease now runs the
--                     compensations and @OnFailure; the run keeps its lease and is marked so that
--                     a worker that takes it over after a crash goes straight to that phase
--          'failed' / 'canceled'  the final state; ARGV[6] is the retention in ms
--          'hook-done' the @OnFailure of a run canceled at once has run: the run is released
-- ARGV[5]  retry delay in ms (for 'retry')
-- ARGV[6]  retention in ms (for a final state)
-- ARGV[7]  '1' when 'finalize' has compensations to run (the run shows 'compensating')
-- Reply: { 1 } done (also when this exact call was already applied), or { 0, reason }; a final state of
--        a child run carries the hand-off to its parent's shard as in wf1_complete.
local function fail(keys, argv)
  local root = keys[1]
  local id, token, err, next_step = argv[1], argv[2], argv[3], argv[4]
  local run = run_key(root, id)
  local now = now_ms()
  local f, reason = check_lease(run, token, now)
  if not f then
    local g = rcall('HMGET', run, 'tok', 'st', 'fin')
    if g[1] == token then
      if next_step == 'retry' and (g[2] == 'queued' or g[2] == 'scheduled') then return { 1 } end
      if next_step == g[2] then return { 1 } end
      if next_step == 'hook-done' and g[2] == 'canceled' and not g[3] then return { 1 } end
    end
    return { 0, reason }
  end
  local wf, status = f[4], f[2]

  if next_step == 'retry' then
    local delay = tonumber(argv[5]) or 0
    local attempt = tonumber(f[8]) + 1
    rcall('ZREM', root .. ':leases', id)
    drop_staged_waits(root, id, run)
    rcall('HINCRBY', run, 'ep', '1')
    if delay > 0 then
      rcall('HSET', run, 'st', 'scheduled', 'att', ms(attempt), 'err', err, 'due', ms(now + delay))
      count_move(root, wf, id, status, 'scheduled')
      flow_release(root, id, wf, now, false, true)
      schedule_timer(root, id, now + delay)
    else
      rcall('HSET', run, 'st', 'queued', 'att', ms(attempt), 'err', err)
      count_move(root, wf, id, status, 'queued')
      ready_run(root, id, wf, f[5], now)
    end
    history(root, id, now, 'retrying', { attempt = attempt - 1, delayMs = delay }, err, f[12] or false)
    return { 1 }
  end

  if next_step == 'finalize' then
    if rcall('HGET', run, 'fin') then return { 1 } end
    local target = 'running'
    if argv[7] == '1' then target = 'compensating' end
    rcall('HSET', run, 'st', target, 'fin', 'failed', 'err', err)
    if target ~= status then count_move(root, wf, id, status, target) end
    history(root, id, now, target == 'compensating' and 'compensating' or 'failing', nil, err, f[12] or false)
    return { 1 }
  end

  if next_step == 'hook-done' then
    rcall('HDEL', run, 'fin')
    rcall('ZREM', root .. ':leases', id)
    -- the slot of the run's flow key its @OnFailure took (lua/cancel.lua)
    flow_release(root, id, wf, now, true, true)
    history(root, id, now, 'on-failure-ran', nil, nil, f[12] or false)
    return { 1 }
  end

  if next_step == 'failed' or next_step == 'canceled' then
    rcall('HSET', run, 'st', next_step, 'err', err, 'fa', ms(now))
    rcall('HDEL', run, 'fin')
    finish_run(root, id, wf, status, next_step, now, argv[6], f[6], err)
    history(root, id, now, next_step, nil, err, f[12] or false)
    local handoff = f[11] and notify_parent(root, id, wf, 'F', err, now, f[7], f[11], f[13])
    if handoff then return { 1, unpack(handoff) } end
    return { 1 }
  end
  return redis.error_reply('ERR wf1_fail: unknown next step ' .. tostring(next_step))
end

redis.register_function('wf1_complete', complete)
redis.register_function('wf1_fail', fail)
