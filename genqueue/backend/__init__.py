"""Redis and everything genqueue stores in it: the connection and embedded server, outage handling, the keyspace,
scripts, RQ objects, counters, audit."""
