"""The Optuna study: its stored state, one trial attempt, the scheduler and its two executors, leases.
"""
