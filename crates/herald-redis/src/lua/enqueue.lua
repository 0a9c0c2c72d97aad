-- KEYS: seen, wait, delayed, seq, wake, counts, job, layout
-- ARGV: now_ms, n_jobs, then the jobs (6 fields each, see enqueue_jobs)
local K = { seen = KEYS[1], wait = KEYS[2], delayed = KEYS[3], seq = KEYS[4], wake = KEYS[5],
  job = KEYS[7] }
local added = enqueue_jobs(K, tonumber(ARGV[1]), 3, tonumber(ARGV[2]))
flush_counts(KEYS[6])
redis.call('SET', KEYS[8], LAYOUT)
return added
