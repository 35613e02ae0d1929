"""The human portal: accounts, agent linking, Stripe top-ups and payouts, budgets, dashboards.

Layers, from the edge in: ``web`` (FastAPI pages, the Stripe webhook and
``/api/v1``: decode, call, map errors) and ``agent_service`` (the NATS
endpoints agents sign link codes and cash-out requests to) → the use cases (``accounts``,
``linking``, ``topups``, ``payouts``, ``controls``, ``transfers``,
``api_tokens``, ``operator``, ``reports``), each one database transaction
that moves money only through ``wallet`` → the pure rules (``money``,
``security``, ``budgets.spending_refusal``) → the adapters
(``stripe_gateway`` over the official SDK, the SQL in each use case).
``server.PortalServer`` is the composition root; ``embedded.EmbeddedPortal``
is what ``agentx up`` runs. ``budgets`` is also imported by the exchange,
which enforces the humans' controls when a contract opens, so it (and this
file) imports nothing heavy.
"""
