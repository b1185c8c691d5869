-- Versions of runs (ARCHITECTURE.md section 9). Loaded before 01-common.lua, whose count_move and make_ready
-- call these, so it uses redis.call itself (rcall is made there).
--
-- A run emitted by an app with a `version` keeps it in its hash field 'v': the version as the app gave it
-- (letters, digits and . _ + -, checked by the client), or '*' and the version for a run of a workflow
-- with versioning 'pinned'. A run without a version has no field (stores nothing). A child run started
-- by a run gets its parent's field as it is: a pinned parent's children are pinned to its version.
--
-- Pinned runs wait in ready sets of their own, one per version and workflow (<root>:qv:<version>:<wf>;
-- a version has no ':'), and a worker claims only from its own version's set (see the claim plan in
-- 03-claim.lua): no claim ever looks at runs it may not take, so a claim stays O(1) however many runs of
-- other versions wait. Runs of a workflow per version that have not finished are counted per shard
-- (<root>:vr:<wf>, field = the 'v' text, value = how many), for getStats and for draining a version.

-- The ready set of a run whose 'v' is `v` (nil or false: none).
local function versioned_ready_key(root, wf, v)
  if v and string.byte(v, 1) == 42 then return root .. ':qv:' .. string.sub(v, 2) .. ':' .. wf end
  return root .. ':q:' .. wf
end

-- The ready set of run `id`, reading its 'v' unless the caller gives it (`v`: a text, or false for none).
local function run_ready_key(root, id, wf, v)
  if v == nil then v = redis.call('HGET', root .. ':r:' .. id, 'v') end
  return versioned_ready_key(root, wf, v)
end

local function version_counts_key(root, wf) return root .. ':vr:' .. wf end

-- Counts a run in or out of its version's runs that have not finished, when a status change crosses
-- that line (created, finished, retried; deleted runs were finished already). `v` as for run_ready_key.
local VERSION_FINAL = { succeeded = true, failed = true, canceled = true }
local function count_version(root, wf, id, from, to, v)
  local was = from ~= nil and from ~= false and not VERSION_FINAL[from]
  local is = to ~= nil and to ~= false and not VERSION_FINAL[to]
  if was == is then return end
  if v == nil then v = redis.call('HGET', root .. ':r:' .. id, 'v') end
  if not v then return end
  local key = version_counts_key(root, wf)
  if redis.call('HINCRBY', key, v, is and 1 or -1) <= 0 then redis.call('HDEL', key, v) end
end

-- Whether a claim group (see claim_plan in 03-claim.lua; group[5]: the version its worker serves when the
-- workflow is pinned there) may take run `run` (its key) without its ready set: a pinned run only by a
-- worker of its version.
local function claims_version_of(group, run)
  local v = redis.call('HGET', run, 'v')
  if not v or string.byte(v, 1) ~= 42 then return true end
  return group[5] == string.sub(v, 2)
end

-- The ready sets a claim group takes from: for a workflow the worker serves pinned, its version's pinned
-- runs, then the runs that have no pin (emitted by an app without a version, or before it was pinned).
local function claim_ready_keys(root, wf, pinned_version)
  if pinned_version then return { versioned_ready_key(root, wf, '*' .. pinned_version), root .. ':q:' .. wf } end
  return { root .. ':q:' .. wf }
end

-- Moves run `id` (its key `run`, workflow `wf`, status `st`) to `version`, keeping whether it is pinned:
-- retryRun(id, { onVersion: 'current' }). A queued run changes ready set at once, keeping its place (its
-- score); a waiting, scheduled or running one goes to its new version's set when it is next ready. A run
-- without a version gets one, unpinned. Returns the run's new 'v'.
local function move_run_version(root, id, run, wf, st, version)
  local old = redis.call('HGET', run, 'v')
  local new = version
  if old and string.byte(old, 1) == 42 then new = '*' .. version end
  if old == new then return new end
  redis.call('HSET', run, 'v', new)
  -- A run a worker of the old version keeps warm (sticky executions, 01-common.lua) is not kept for it any
  -- more: a queued one leaves that worker's sticky queue for its ready set (moved below), a waiting one
  -- wakes to its ready set.
  local warm = redis.call('HGET', run, 'ww')
  if warm then
    redis.call('HDEL', run, 'ww')
    redis.call('DEL', root .. ':sd:' .. id)
    local worker = string.match(warm, '^%d+|%d+|(.*)$')
    if st == 'queued' and worker then
      local sticky = root .. ':sq:' .. worker
      local score = redis.call('ZSCORE', sticky, id)
      if score then
        redis.call('ZREM', sticky, id)
        redis.call('ZADD', versioned_ready_key(root, wf, old), score, id)
      end
    end
  end
  if st and not VERSION_FINAL[st] then
    local key = version_counts_key(root, wf)
    if old and redis.call('HINCRBY', key, old, -1) <= 0 then redis.call('HDEL', key, old) end
    redis.call('HINCRBY', key, new, 1)
  end
  if st == 'queued' then
    local from = versioned_ready_key(root, wf, old)
    local score = redis.call('ZSCORE', from, id)
    if score then
      redis.call('ZREM', from, id)
      local to = versioned_ready_key(root, wf, new)
      redis.call('ZADD', to, score, id)
      if redis.call('ZCARD', to) == 1 then redis.call('SPUBLISH', root .. ':w', 'r') end
    end
  end
  return new
end
