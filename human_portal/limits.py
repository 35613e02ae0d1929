"""Every limit and product constant of the portal, named in one place.

Their relations are asserted at import time, so that changing one without
the others fails here instead of in production.
"""

from __future__ import annotations

from typing import Final

from wallet import MILLICREDITS_PER_CREDIT, MILLICREDITS_PER_USD_CENT, TRANSFER_AMOUNT_MAX

# --- accounts and sessions ------------------------------------------------------------

EMAIL_LENGTH_MAX: Final = 254
PASSWORD_LENGTH_MIN: Final = 10
# Long enough for any passphrase, short enough that hashing it is cheap.
PASSWORD_LENGTH_MAX: Final = 256
SESSION_LIFETIME_S: Final = 7 * 24 * 3600
SESSION_TOKEN_BYTES: Final = 32
CSRF_TOKEN_BYTES: Final = 32
# Sign-in failures counted per email and per client address in a sliding window.
LOGIN_FAILURES_MAX: Final = 5
LOGIN_FAILURE_WINDOW_S: Final = 15 * 60
# Client addresses are counted with a higher ceiling: many people can share one.
LOGIN_FAILURES_PER_ADDRESS_MAX: Final = 50
# Argon2id, RFC 9106's second recommended profile (64 MiB, 3 passes).
ARGON2_TIME_COST: Final = 3
ARGON2_MEMORY_COST_KIB: Final = 64 * 1024
ARGON2_PARALLELISM: Final = 4
FORM_BYTES_MAX: Final = 64 * 1024
LABEL_LENGTH_MAX: Final = 64

# --- agent linking --------------------------------------------------------------------

# 15 base32 characters: 75 bits, shown as three groups of five.
LINK_CODE_CHARACTERS: Final = 15
LINK_CODE_LIFETIME_S: Final = 10 * 60
LINK_CODES_OPEN_PER_USER_MAX: Final = 5
LINKED_AGENTS_PER_USER_MAX: Final = 50
LINK_REQUEST_TIMEOUT_S: Final = 10.0

# --- money: top-ups -------------------------------------------------------------------

CURRENCY: Final = "usd"
# Custom top-ups: whole cents between these bounds.
CUSTOM_TOPUP_CENTS_MIN: Final = 500
CUSTOM_TOPUP_CENTS_MAX: Final = 100_000
TOPUPS_OPEN_PER_USER_MAX: Final = 20
# Stripe signs a webhook with its timestamp; older deliveries are refused.
WEBHOOK_TOLERANCE_S: Final = 300
WEBHOOK_BYTES_MAX: Final = 256 * 1024
STRIPE_REQUEST_TIMEOUT_S: Final = 20.0
STRIPE_NETWORK_RETRIES_MAX: Final = 2
# A clawback that loses a race with concurrent spending reads the balance again.
CLAWBACK_ATTEMPTS_MAX: Final = 5

# --- money: cash-out ------------------------------------------------------------------

CASH_OUT_CREDITS_MIN: Final = 100
CASH_OUT_CREDITS_PER_MONTH_MAX: Final = 10_000
# Payouts whose Stripe transfer had an unknown outcome are retried (same
# idempotency key) at most this many at a time.
PAYOUT_RECOVERY_BATCH_MAX: Final = 100

# --- budgets and approvals ------------------------------------------------------------

BUDGET_MILLICREDITS_MAX: Final = 10**12
# An approval shows the human this much of the agent's task.
APPROVAL_TASK_LENGTH_MAX: Final = 1_000
# How long an approval is asked for, and how far "spent today" is read: the
# exchange enforces the controls, so these live in exchange/limits.py.

# --- reading ------------------------------------------------------------------------

TRANSACTIONS_PAGE_SIZE_MAX: Final = 1000
# The Transactions page: statement entries (a purchase, a top-up ...) per page,
# and how far its page number may go (the history read is capped anyway).
STATEMENT_PAGE_SIZE: Final = 50
STATEMENT_PAGE_MAX: Final = 10_000
RECENT_CONTRACTS_MAX: Final = 50
CHART_DAYS: Final = 14
API_TOKENS_PER_USER_MAX: Final = 20
API_TOKEN_BYTES: Final = 32
API_TOKEN_NAME_LENGTH_MAX: Final = 64
HTTP_REQUEST_TIMEOUT_S: Final = 30.0

# --- headline and notices -------------------------------------------------------------

# The dashboard's recent contracts; the rest are on /transactions.
DASHBOARD_CONTRACTS_MAX: Final = 10
# The notice list: the newest this many, shown this many to a page.
NOTICES_MAX: Final = 100
NOTICES_PAGE_SIZE: Final = 25
# A refused purchase is kept this long, and at most this many per agent.
REFUSALS_KEPT_DAYS: Final = 30
REFUSALS_PER_AGENT_MAX: Final = 200
REFUSAL_REASON_LENGTH_MAX: Final = 500
# An agent with less than this available gets a low-balance notice (1 credit).
LOW_BALANCE_MILLICREDITS: Final = MILLICREDITS_PER_CREDIT
# The navigation's counts stop here ("99+").
NAV_COUNT_MAX: Final = 99

# --- relations ----------------------------------------------------------------------

assert PASSWORD_LENGTH_MIN < PASSWORD_LENGTH_MAX <= FORM_BYTES_MAX
assert LOGIN_FAILURES_MAX < LOGIN_FAILURES_PER_ADDRESS_MAX
assert LINK_CODE_CHARACTERS * 5 >= 64, "a link code must be unguessable"
assert CUSTOM_TOPUP_CENTS_MIN > 0 and CUSTOM_TOPUP_CENTS_MIN < CUSTOM_TOPUP_CENTS_MAX
# The largest top-up, fee included, fits one ledger transfer many times over.
assert CUSTOM_TOPUP_CENTS_MAX * 2 * MILLICREDITS_PER_USD_CENT < TRANSFER_AMOUNT_MAX
assert 0 < CASH_OUT_CREDITS_MIN <= CASH_OUT_CREDITS_PER_MONTH_MAX
assert CASH_OUT_CREDITS_PER_MONTH_MAX * MILLICREDITS_PER_CREDIT < TRANSFER_AMOUNT_MAX
assert BUDGET_MILLICREDITS_MAX < TRANSFER_AMOUNT_MAX
assert STRIPE_REQUEST_TIMEOUT_S < HTTP_REQUEST_TIMEOUT_S
assert 0 < DASHBOARD_CONTRACTS_MAX <= RECENT_CONTRACTS_MAX
assert 0 < NOTICES_PAGE_SIZE <= NOTICES_MAX and NAV_COUNT_MAX < NOTICES_MAX
assert REFUSALS_KEPT_DAYS > 0 and REFUSALS_PER_AGENT_MAX > 0
assert 0 < STATEMENT_PAGE_SIZE <= TRANSACTIONS_PAGE_SIZE_MAX
assert (
    STATEMENT_PAGE_MAX * STATEMENT_PAGE_SIZE
    >= LINKED_AGENTS_PER_USER_MAX * TRANSACTIONS_PAGE_SIZE_MAX
)
