"""The human portal (accounts, agent linking, Stripe top-ups and payouts, budgets).

Not built yet: this package is reserved by the project layout and holds no
code until the portal issue is done. Nothing imports it.
"""
