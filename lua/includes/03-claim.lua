-- Claiming ready runs, shared by wf1_claim and wf1_complete (which refills the slot it frees, as a claim would).
-- What a run never claimed has of the fields that only a claim, a failure or a cancel writes: none.
local NEVER_CLAIMED = { false, false, false, false, false, false, false, false, false }
-- The steps of a run that has none, shared: only read (its length, and as an element of a reply).
local NO_STEPS = {}
-- Step records a paged claim returns per run at most (about 3 µs of Redis time each, reply included).
local CLAIM_RECORDS_PAGE = '256'
-- Delta records a warm claim sends at most (see claim_run); past it, every record, paged.
local DELTA_PAGE = 256

local DAMAGED_RUN = '{"name":"CorruptedRunError","message":"The stored run is damaged (its attempt, creation time or input is missing or invalid), so it cannot be executed. Inspect it with getRun, then emit a new run."}'

-- Claims the run `id`, just popped from the ready set of workflow `wf`, into `reply`. Returns true when
-- the run was claimed, false when its ready entry was dropped (the run is not claimable any more).
-- `handed_over`: the run was not popped but woken in this call for this claim (see wake_run), so it is
-- still 'waiting'.
local function claim_run(root, id, wf, max_attempts, timeout_ms, claim, reply, handed_over)
  local worker, claim_id, now, now_text, lease_text = claim.worker, claim.id, claim.now, claim.now_text, claim.lease_text
  local run = run_key(root, id)
  -- Each field HMGET looks for costs a scan of the run hash (all of it for a field the run does not have),
  -- so a run that nothing has happened to since its emit (never claimed, only its creation in its
  -- history: 'hn' = '1') is read without the nine fields that only a claim, a failure or a cancel writes.
  local first = rcall('HMGET', run, 'st', 'att', 'in', 'ca', 'par', 'hn')
  local later = NEVER_CLAIMED
  if first[6] ~= '1' then later = rcall('HMGET', run, 'max', 'fen', 'dl', 'fin', 'err', 'sa', 'comp', 'tok', 'ep', 'ww') end
  -- locals rather than one table of both readings: a table costs Redis about 150 instructions per element
  local st, attempt, input, created, parent, implied = first[1], first[2], first[3], first[4], first[5], first[6]
  local stored_max, fenced, deadline_at, fin, err, started, comp, tok, epoch, warm =
    later[1], later[2], later[3], later[4], later[5], later[6], later[7], later[8], later[9], later[10]
  -- A ready entry whose run is not queued any more (canceled meanwhile, or gone) is dropped. A run
  -- canceled with compensations waits in 'compensating', its token revoked, for a worker to run them.
  local claimable = st == 'queued' or (handed_over and st == 'waiting') or ((st == 'compensating' or (st == 'canceled' and fin == 'hook')) and fin and tok == '')
  if claimable and (not tonumber(attempt) or not tonumber(created) or not input or (stored_max and not tonumber(stored_max))) then
    -- Damaged by hand or by a foreign writer: fail this run alone, with the reason in its history.
    rcall('HSET', run, 'st', 'failed', 'err', DAMAGED_RUN, 'fa', now_text)
    finish_run(root, id, wf, st, 'failed', now, claim.damaged_retention, deadline_at)
    history(root, id, now, 'failed', nil, DAMAGED_RUN, implied or false)
  elseif claimable then
    local fence = fenced and ms(tonumber(fenced) + 1) or '1'
    local token = fence .. ':' .. claim_id
    local max = stored_max or max_attempts
    -- A run taken over in its finalizing phase with compensations left goes on compensating.
    local status = 'running'
    if fin and comp then status = 'compensating' end
    if st == 'canceled' then status = 'canceled' end
    -- The first claim of a run whose history is only implied is implied too (see history).
    local implied_claim = implied == '1' and attempt == '1' and not fenced and not started and status == 'running'
    if implied and not implied_claim then write_implied_history(root, id, implied) end
    -- the arguments written out, without a table to unpack: this runs for every run claimed
    if started then
      rcall('HSET', run, 'st', status, 'tok', token, 'fen', fence, 'lu', lease_text, 'wk', worker, 'max', max)
    elseif implied_claim then
      rcall('HSET', run, 'st', status, 'tok', token, 'fen', fence, 'lu', lease_text, 'wk', worker, 'max', max, 'sa', now_text, 'hn', '2')
      count_throughput(root, wf, 'b', now)
    else
      rcall('HSET', run, 'st', status, 'tok', token, 'fen', fence, 'lu', lease_text, 'wk', worker, 'max', max, 'sa', now_text)
      count_throughput(root, wf, 'b', now)
    end
    -- a run of a queue with a concurrency limit: its release tells workers cut short by the limit (flow_release)
    if claim.queue_limited then rcall('HSET', run, 'ql', '1') end
    if timeout_ms > 0 and (not deadline_at or not started) then
      -- A child may have a deadline from its parent already (runWorkflow's timeoutMs, lua/emit.lua): the
      -- earlier of the two stands. A run never claimed ('hn' = '1') was read without 'dl' above.
      local given = tonumber(deadline_at) or (implied == '1' and tonumber(rcall('HGET', run, 'dl')))
      if not given or now + timeout_ms < given then
        local deadline = ms(now + timeout_ms)
        rcall('HSET', run, 'dl', deadline)
        rcall('ZADD', root .. ':deadlines', deadline, id)
      end
    end
    rcall('ZADD', root .. ':leases', lease_text, id, '+inf', SKIPLIST_SENTINEL)
    if st ~= status then count_move(root, wf, id, st, status) end
    if not implied_claim then history(root, id, now, 'claimed', { attempt = tonumber(attempt), workerId = worker }, nil, false) end
    -- Step records are written only under a lease, or delivered to a run that waits, which was
    -- claimed before: a run never claimed (no fencing counter yet) has none to read.
    local steps, more = NO_STEPS, nil
    -- A run its worker keeps warm, claimed by that worker with no claim in between and nothing to
    -- finalize: only the records written since its park ('w' before the count; see delta_key). Past a
    -- page of them, every record as below, still marked 'w'. Any other claim forgets the warm mark.
    local delta = nil
    if warm then
      local warm_fence, _, warm_worker = warm_parts(warm)
      rcall('HDEL', run, 'ww')
      local dkey = delta_key(root, id)
      if claim.paged and warm_worker == worker and warm_fence == fenced and status == 'running' and not fin then
        local n = rcall('SCARD', dkey)
        if n == 0 then
          delta = NO_STEPS
        elseif n <= DELTA_PAGE then
          -- at most DELTA_PAGE fields: a bounded unpack
          local fields = rcall('SMEMBERS', dkey)
          local records = rcall('HMGET', steps_key(root, id), unpack(fields))
          delta = {}
          for d = 1, #fields do
            if records[d] then
              delta[#delta + 1] = fields[d]
              delta[#delta + 1] = records[d]
            end
          end
        else
          delta = false
        end
      end
      rcall('DEL', dkey)
    end
    if delta then
      steps = delta
    elseif fenced then
      if claim.paged then
        -- A run's records are read a page at a time once its hash leaves the compact encoding (past 512
        -- fields, or a record over 64 bytes, as most are): a parent woken after 10,000 children took 30-50 ms
        -- to claim with HGETALL. The worker reads the rest from the cursor (WorkflowStore.readStepsFrom),
        -- under the lease this claim gives it; a compact hash comes whole.
        local page = rcall('HSCAN', steps_key(root, id), '0', 'COUNT', CLAIM_RECORDS_PAGE)
        steps = page[2]
        if page[1] ~= '0' then more = page[1] end
      else
        steps = rcall('HGETALL', steps_key(root, id))
      end
    end
    -- one concatenation of all the pieces (Lua makes a chain of '..' one operation), cheaper than a table and table.concat
    -- the parent of a graph's node names the graph and the node too ('<parent>|<graph id>|<node>', see includes/05-graph.lua)
    local head = claim.packed and (id .. '\n' .. token .. '\n' .. (parent or '') .. '\n' .. (fin or '') .. '\n' .. attempt .. '\n' ..
      max .. '\n' .. created .. '\n' .. (epoch or '0') .. '\n' .. wf)
    if claim.flat then
      -- the run's elements directly in the reply: head, input, error, how many step elements follow, the steps
      local n = #reply
      reply[n + 1] = head
      reply[n + 2] = input
      reply[n + 3] = err or ''
      -- '<n>:<cursor>' when the records go on past this page (a paged claim only)
      reply[n + 4] = more and (#steps .. ':' .. more) or #steps
      -- a warm claim: 'w<n>' the delta records only, 'w<n>:<cursor>' every record, paged
      if delta ~= nil then reply[n + 4] = 'w' .. reply[n + 4] end
      for s = 1, #steps do reply[n + 4 + s] = steps[s] end
    elseif claim.packed then
      reply[#reply + 1] = { head, input, err or '', steps }
    else
      reply[#reply + 1] = { id, wf, input, tonumber(attempt), tonumber(max), token, tonumber(created), parent or '',
        fin or '', err or '', steps, tonumber(epoch) or 0 }
    end
    return true
  end
  return false
end

-- How a claim goes through the workflows it may take, made from their specs: a list of segments, each either
-- one workflow with maxConcurrency ({ wf, limit, max_attempts, timeout_ms }), or consecutive workflows
-- without a limit that share one ZMPOP ({ pop = the command, count_at = where its COUNT goes,
-- group_of = { ready key -> { wf, max_attempts, timeout_ms } } }).
-- The plan also maps each workflow without a limit to its group (plan.groups), for a run handed over to
-- the claim (see takes_over).
local function claim_plan(root, groups)
  local plan, k = { groups = {}, specs = groups }, 1
  while k <= #groups do
    local g = groups[k]
    if g[2] > 0 or g[6] then
      -- flow: runs of the workflow may have flow keys whose claims matter to them (see flow_claimed)
      plan[#plan + 1] = { wf = g[1], limit = g[2], max_attempts = g[3], timeout_ms = g[4], flow = g[6], keys = claim_ready_keys(root, g[1], g[5]) }
      k = k + 1
    else
      local pop, group_of = { 'ZMPOP', 0 }, {}
      while k <= #groups and groups[k][2] == 0 and not groups[k][6] do
        for _, key in ipairs(claim_ready_keys(root, groups[k][1], groups[k][5])) do
          pop[#pop + 1] = key
          group_of[key] = groups[k]
        end
        plan.groups[groups[k][1]] = groups[k]
        k = k + 1
      end
      pop[2] = ms(#pop - 2)
      pop[#pop + 1] = 'MIN'
      pop[#pop + 1] = 'COUNT'
      plan[#plan + 1] = { pop = pop, count_at = #pop + 1, group_of = group_of }
    end
  end
  return plan
end

-- Plans by shard root and packed spec text. A worker sends the same few texts call after call (one per
-- rotation of its workflows), so each is parsed and its keys built once per library load instead of in
-- every claim and completion: a pure function of its key, bounded, and rebuilt after a FUNCTION LOAD.
local CLAIM_PLANS, CLAIM_PLAN_COUNT, MAX_CLAIM_PLANS = {}, 0, 1024

-- The packed spec text: per workflow '<maxConcurrency>,<maxAttempts>,<timeoutMs>,<name length>:<name>',
-- preceded by 'p<version length>:<version>' for a workflow the worker serves pinned to its version (build
-- 51 on; see includes/00-versions.lua); a maxConcurrency ending in 'f' (build 51 on) marks a workflow with
-- flow control (see flow_claimed), and a leading 'Q<n>|' (build 51 on) limits the runs executing at once in
-- the shard (its queue's concurrency).
local function packed_claim_plan(root, text)
  local by_text = CLAIM_PLANS[root]
  local plan = by_text and by_text[text]
  if plan then return plan end
  local groups, pos = {}, 1
  local queue_limit, after = string.match(text, '^Q(%d+)|()')
  if queue_limit then pos = after end
  while pos <= #text do
    local pinned
    local version_length, version_from = string.match(text, '^p(%d+):()', pos)
    if version_length then
      pos = version_from + tonumber(version_length)
      pinned = string.sub(text, version_from, pos - 1)
    end
    local limit, attempts, timeout, length, from = string.match(text, '^([^,]*),([^,]*),([^,]*),(%d+):()', pos)
    local to = from and from + tonumber(length) - 1
    if not to or to > #text then error('wf1: malformed workflow specs in a claim: ' .. text) end
    local flow = string.sub(limit, -1) == 'f'
    if flow then limit = string.sub(limit, 1, -2) end
    groups[#groups + 1] = { string.sub(text, from, to), tonumber(limit), attempts, tonumber(timeout), pinned, flow }
    pos = to + 1
  end
  plan = claim_plan(root, groups)
  plan.queue_limit = tonumber(queue_limit)
  if CLAIM_PLAN_COUNT >= MAX_CLAIM_PLANS then
    CLAIM_PLANS, CLAIM_PLAN_COUNT = {}, 0
    by_text = nil
  end
  if not by_text then
    by_text = {}
    CLAIM_PLANS[root] = by_text
  end
  by_text[text] = plan
  CLAIM_PLAN_COUNT = CLAIM_PLAN_COUNT + 1
  return plan
end

-- Claims into `reply` (appending one entry per run) from the arguments at argv[at..]:
--   worker id, how many runs at most, lease in ms, claim id, retention in ms of a damaged run, then the
--   workflows to claim, in the order to try them: one packed spec text (see packed_claim_plan), or, as
--   builds before 31 send them, groups of 4 per workflow: name, maxConcurrency (0 = unlimited),
--   maxAttempts, timeoutMs (0 = none).
-- How many runs at most with a trailing 'p' ('16p') asks for packed entries (see wf1_claim): each
-- element of a reply costs the client's RESP decoder about 0.4 µs, and an unpacked entry has 12.
-- A trailing 'f' ('16f', build 39 on) asks for the packed entries flat, in the reply itself: every table
-- of a reply costs Redis about 5,000 instructions to turn into RESP (it looks each one up for 'err', 'ok',
-- 'double', 'map' and more; callgrind), and a packed entry is two tables. Builds before 24 send a bare
-- number and get unpacked entries, as they always did.
-- The entries a claim asks for, read from the end of its count (`want_text`): 'f' flat, 'p' packed, nil unpacked.
-- A trailing 'r' (build 48 on) asks for flat entries whose step records may come in pages (see claim_run).
local function claim_entry_format(want_text)
  local suffix = string.sub(want_text, -1)
  if suffix == 'f' or suffix == 'p' then return suffix end
  if suffix == 'r' then return 'f' end
  return nil
end


-- How many runs a claim asks for at most, and the format of its entries (see claim_entry_format).
-- A leading 's' ('s16r', build 52 on): the claim takes the runs on the caller's sticky queue first (see
-- delta_key in 01-common.lua); the third value says so.
local function claim_want(want_text)
  local format = claim_entry_format(want_text)
  local sticky = string.byte(want_text, 1) == 115
  return tonumber(string.sub(want_text, sticky and 2 or 1, format and -2 or -1)), format, sticky
end

-- What a completion that refills its slot offers a run it wakes (wake_run's `handover`): the workflows
-- the refill may take without a limit (a workflow with maxConcurrency is claimed only within its room),
-- and, once a run was handed over, its id and group. One table for the library's lifetime, as CLAIM.
local HANDOVER = {}

-- The handover for the claim at argv[at..] (see claim_runs), or nil when it asks for no run or names its
-- workflows as builds before 31 do.
local function takes_over(root, argv, at)
  local want = claim_want(argv[at + 1])
  if #argv ~= at + 5 or not want or want < 1 then return nil end
  HANDOVER.groups, HANDOVER.id, HANDOVER.group, HANDOVER.worker = without_paused(root, packed_claim_plan(root, argv[at + 5]), claim_plan).groups, nil, nil, argv[at]
  return HANDOVER
end

-- What claim_run needs of the claim, filled in by each claim_runs: one table for the library's lifetime
-- instead of one per claim (a table costs Redis its allocation and later its collection). A claim
-- never runs inside another, so one is enough.
local CLAIM = {}

-- `now_text`: ms(now), when the caller has made it already. `handover`: from takes_over, when the caller
-- offered this claim to the runs it woke; the run handed over, if any, is claimed first.
local function claim_runs(root, argv, at, now, reply, now_text, handover)
  local want, format, sticky = claim_want(argv[at + 1])
  local flat = format == 'f'
  local packed = format ~= nil
  local claim = CLAIM
  claim.worker, claim.id, claim.now, claim.now_text = argv[at], argv[at + 3], now, now_text or ms(now)
  claim.lease_text, claim.packed, claim.flat, claim.damaged_retention = ms(now + tonumber(argv[at + 2])), packed, flat, argv[at + 4]
  claim.paged = string.sub(argv[at + 1], -1) == 'r'
  local taken = 0
  if handover and handover.id then
    local group = handover.group
    if claim_run(root, handover.id, group[1], group[3], group[4], claim, reply, true) then taken = 1 end
  end

  local plan
  if #argv == at + 5 then
    plan = packed_claim_plan(root, argv[at + 5])
  else
    local groups = {}
    for g = at + 5, #argv, 4 do groups[#groups + 1] = { argv[g], tonumber(argv[g + 1]), argv[g + 2], tonumber(argv[g + 3]) } end
    plan = claim_plan(root, groups)
  end
  plan = without_paused(root, plan, claim_plan)

  claim.queue_limited = plan.queue_limit ~= nil
  if plan.queue_limit then want = math.min(want, taken + queue_room(root, plan.queue_limit, want - taken)) end
  if sticky and taken < want then
    -- The caller's warm runs first (see delta_key in 01-common.lua). A workflow the plan does not take
    -- without a limit goes to its ready set, where the limit is kept.
    local popped = rcall('ZPOPMIN', sticky_key(root, claim.worker), want - taken)
    for p = 1, #popped, 2 do
      local id = popped[p]
      rcall('ZREM', root .. ':timers', id)
      local f = rcall('HMGET', run_key(root, id), 'wf', 'pri', 'st')
      local group = f[1] and plan.groups[f[1]]
      if group then
        if claim_run(root, id, f[1], group[3], group[4], claim, reply) then taken = taken + 1 end
      elseif f[3] == 'queued' then
        make_ready(root, id, f[1], f[2], now)
      end
    end
  end

  for _, segment in ipairs(plan) do
    if taken >= want then break end
    if segment.limit then
      -- A workflow with maxConcurrency: as many as its executing runs leave room for.
      local wf = segment.wf
      local room = want - taken
      if segment.limit > 0 then
        local executing = rcall('ZLEXCOUNT', status_key(root, wf, 'running'), '-', BEFORE_SENTINEL) + rcall('ZCARD', status_key(root, wf, 'compensating'))
        room = math.min(room, segment.limit - executing)
      end
      local keys, key_at = segment.keys, 1
      while room > 0 do
        -- One pop takes as many entries as there is room for; entries dropped leave room for another pop.
        local popped = rcall('ZPOPMIN', keys[key_at], room)
        if #popped == 0 then
          -- the workflow's next ready set (a pinned workflow has two, see claim_ready_keys)
          key_at = key_at + 1
          if not keys[key_at] then break end
        end
        for p = 1, #popped, 2 do
          if claim_run(root, popped[p], wf, segment.max_attempts, segment.timeout_ms, claim, reply) then
            taken = taken + 1
            room = room - 1
            if segment.flow then flow_claimed(root, popped[p], wf, now) end
          end
        end
      end
    else
      -- Consecutive workflows without a limit share each pop: ZMPOP takes from the first of their ready
      -- sets that has runs, so empty ready sets cost no call of their own.
      local pop, count_at, group_of = segment.pop, segment.count_at, segment.group_of
      while taken < want do
        -- { key, { { member, score }, ... } }, or false when every set is empty
        pop[count_at] = ms(want - taken)
        local popped = rcall(unpack(pop))
        if not popped then break end
        local group = group_of[popped[1]]
        local wf, max_attempts, timeout_ms = group[1], group[3], group[4]
        for _, entry in ipairs(popped[2]) do
          if claim_run(root, entry[1], wf, max_attempts, timeout_ms, claim, reply) then taken = taken + 1 end
        end
      end
    end
  end
end
