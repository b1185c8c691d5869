-- wf1_version: the build of the loaded library (read-only).
-- Reply: the build number.
local function version()
  return BUILD
end

-- wf1_register: records the workflows a worker serves, so that API-only apps can emit them by name and
-- operators can see them.
-- KEYS[1]  the registry hash '{<prefix>}:workflows'
-- ARGV[1..] pairs of workflow name, metadata (JSON text written by the client)
-- Reply: number of workflows written.
local function register(keys, argv)
  for i = 1, #argv, 2 do
    rcall('HSET', keys[1], argv[i], argv[i + 1])
  end
  return #argv / 2
end

-- wf1_register_absent: records a workflow that no worker has registered, for an app that emits it by
-- class, so that its runs are listed and counted while no worker serves it. A worker's entry is kept.
-- KEYS[1]  the registry hash '{<prefix>}:workflows'
-- ARGV[1]  workflow name    ARGV[2] metadata (JSON text written by the client)
-- Reply: 1 when written, 0 when the workflow was registered already.
local function register_absent(keys, argv)
  return rcall('HSETNX', keys[1], argv[1], argv[2])
end

redis.register_function({ function_name = 'wf1_version', callback = version, flags = { 'no-writes' } })
redis.register_function('wf1_register', register)
redis.register_function('wf1_register_absent', register_absent)

-- wf1_worker_beat: a worker says it is alive (or, with a ttl of 0, that it stopped), and workers not
-- heard from within their ttl are forgotten.
-- KEYS[1]  the workers hash '{<prefix>}:workers'
-- ARGV[1]  worker id    ARGV[2] what it serves (JSON text written by the client)    ARGV[3] ttl in ms
-- Reply: the server time in ms.
local function worker_beat(keys, argv)
  local now = now_ms()
  local ttl = tonumber(argv[3])
  if ttl > 0 then
    rcall('HSET', keys[1], argv[1], string.format('%d', now + ttl) .. '|' .. argv[2])
  else
    rcall('HDEL', keys[1], argv[1])
  end
  local all = rcall('HGETALL', keys[1])
  for i = 1, #all, 2 do
    local expires = tonumber(string.match(all[i + 1], '^(%d+)|'))
    if expires and expires < now then rcall('HDEL', keys[1], all[i]) end
  end
  return now
end

redis.register_function('wf1_worker_beat', worker_beat)
