-- KEYS: seen, wait, delayed, seq, wake, counts
-- ARGV: prefix, now_ms, n_jobs, then the jobs (6 fields each, see enqueue_jobs)
local K = { seen = KEYS[1], wait = KEYS[2], delayed = KEYS[3], seq = KEYS[4], wake = KEYS[5] }
local added = enqueue_jobs(ARGV[1], K, tonumber(ARGV[2]), 4, tonumber(ARGV[3]))
flush_counts(KEYS[6])
return added
