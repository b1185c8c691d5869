-- wf1_heartbeat: renews the leases of runs a worker executes in this shard.
-- KEYS[1]  shard root
-- ARGV[1]  lease in ms; ARGV[2..] pairs of run id, token
-- Reply: the ids of runs whose lease is lost (token stale, lease expired, or the run no longer
--        executing: canceled, timed out). The worker aborts those executions.
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do
local function heartbeat(keys, argv)
  local root = keys[1]
  local now = now_ms()
  local lease_until = now + tonumber(argv[1])
  local lost = {}
  for i = 2, #argv, 2 do
    local id, token = argv[i], argv[i + 1]
    local run = run_key(root, id)
    if holds_lease(run, token, now) then
      rcall('HSET', run, 'lu', ms(lease_until))
      rcall('ZADD', root .. ':leases', ms(lease_until), id)
    else
      lost[#lost + 1] = id
    end
  end
  return lost
end

-- wf1_release: gives runs back to the queue without using up an attempt (graceful shutdown).
-- KEYS[1]  shard root
-- ARGV[1]  reason (for the history); ARGV[2..] pairs of run id, token
-- Reply: number of runs released. Repeating the call changes nothing: a released run is no longer
--        executing under that token.
local function release(keys, argv)
  local root = keys[1]
  local now = now_ms()
  local released = 0
  for i = 2, #argv, 2 do
    local id, token = argv[i], argv[i + 1]
    local run = run_key(root, id)
    local f = check_lease(run, token, now)
    if f and f[2] == 'running' then
      drop_staged_waits(root, id, run)
      rcall('HSET', run, 'st', 'queued')
      rcall('ZREM', root .. ':leases', id)
      count_move(root, f[4], id, 'running', 'queued')
      ready_run(root, id, f[4], f[5], now)
      history(root, id, now, 'released', { reason = argv[1] }, nil, f[12] or false)
      released = released + 1
    end
  end
  return released
end

redis.register_function('wf1_heartbeat', heartbeat)
redis.register_function('wf1_release', release)
end
