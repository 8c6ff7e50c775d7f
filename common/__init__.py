"""Pieces shared by several projects of the monorepo: distributed set-up, checkpoints, logging, AMP, EMA,
schedules, seeding, data reading with a bad-sample policy, metrics, visualisation, and training-loop guards.

Functions, not frameworks: each project writes its own training loop and calls these.
"""
