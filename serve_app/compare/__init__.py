"""Comparing two jobs, and the summaries that history and the leaderboard read (pure: no Ray, no evalscope import).

bootstrap.py (the paired bootstrap), reviews.py (evalscope's per-sample scores), requests.py (what makes two runs
comparable), evals.py and perf.py (the two kinds of comparison), jobs.py (the one entry point), summary.py (a job's
scores and key perf metrics, stored beside it).
"""
