"""Example domains, shipped with the package so ``playthrough demo`` runs anywhere.

- ``bank``: accounts, transfers that touch two accounts and a ledger singleton
- ``game``: source document 003's scenario, a player enabling a modifier in a game

The scripts in the repository's top-level ``examples/`` walk through them.
"""
