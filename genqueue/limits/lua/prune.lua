-- ARGV: known set, limit-key prefix head, tail. Returns how many keys are known once the dead are gone.
return lim_prune_known(ARGV[1], ARGV[2], ARGV[3])
