-- A DAG run's cancel asked on any gateway (docs/cluster.md "DAG runs"): it
-- becomes the field `cancel` of dag:<id>, which the owner reads at its
-- lease tick (dagleases.lua returns it) and which a gateway that takes the
-- run over after its owner died reads at the same tick: the cancel stands
-- whoever drives the run, and survives the owner.
-- KEYS: dag:<id>, dags:running   ARGV: id, when (µs)
-- Returns 1 recorded (or recorded before), 0 the run has ended, -1 no such run.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'cancel', ARGV[2])
return 1
