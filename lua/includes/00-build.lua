-- Build number of this library. Bump it on every change of any file in lua/: a process loads the
-- library (FUNCTION LOAD REPLACE) only when the build loaded in Redis is older than its own, and never
-- downgrades. A change that older code cannot read takes a new schema prefix (wf2_...) instead.
local BUILD = 48
