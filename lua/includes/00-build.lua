-- Build number of this library. Bump it on every change of any file in lua/: a process loads the
-- library (FUNCTION LOAD REPLACE) only when the build loaded in Redis is older than its own, and never
-- downgrades. A change that older code cannot read takes a new schema prefix (wf2_...) instead.
-- A library is identified by this build and the sha256 of its code as Redis holds it: a loaded library
-- with the same build but other code is refused (lib/redis/function-loader.ts), so two copies of the
-- package whose lua/ differ must not share a build.
local BUILD = 60
