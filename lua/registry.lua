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

redis.register_function({ function_name = 'wf1_version', callback = version, flags = { 'no-writes' } })
redis.register_function('wf1_register', register)
