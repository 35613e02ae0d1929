// The payment page: Stripe.js collects the card, the portal never sees its number.
// With real Stripe, Stripe.js confirms the PaymentIntent in the browser. Offline,
// localstripe's mock Stripe.js can only tokenize the card, so the portal attaches
// the token and confirms; a card that needs 3-D Secure is then authenticated by
// Stripe.js as usual. Either way the credits arrive only from Stripe's webhook,
// which this page waits for.
(function () {
  "use strict";
  const root = document.getElementById("payment");
  if (!root || root.dataset.status !== "created") {
    return;
  }
  const stripe = Stripe(root.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  const button = document.getElementById("pay-button");
  const message = document.getElementById("payment-message");
  const topUpUrl = "/top-up/" + encodeURIComponent(root.dataset.topup);
  const POLLS_MAX = 90;
  const POLL_INTERVAL_MS = 1000;

  function say(text) {
    message.textContent = text;
  }

  async function payOffline() {
    const tokenized = await stripe.createToken(card);
    if (tokenized.error) {
      throw new Error(tokenized.error.message || "the card was refused");
    }
    const response = await fetch(topUpUrl + "/card", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRF-Token": root.dataset.csrf,
      },
      body: JSON.stringify({ card_id: tokenized.token.card.id }),
    });
    const body = await response.json();
    if (!response.ok) {
      throw new Error((body.error && body.error.message) || "the payment was refused");
    }
    if (body.status === "requires_action") {
      const confirmed = await stripe.confirmCardPayment(body.client_secret);
      if (confirmed.error) {
        throw new Error(confirmed.error.message || "the card was not authenticated");
      }
    }
  }

  async function payWithStripe() {
    const confirmed = await stripe.confirmCardPayment(root.dataset.clientSecret, {
      payment_method: { card: card },
    });
    if (confirmed.error) {
      throw new Error(confirmed.error.message || "the payment was refused");
    }
  }

  async function waitForCredits() {
    for (let poll = 0; poll < POLLS_MAX; poll += 1) {
      const response = await fetch(topUpUrl + "/status", {
        credentials: "same-origin",
        headers: { "Accept": "application/json" },
      });
      if (response.ok && (await response.json()).status === "paid") {
        root.dataset.status = "paid";
        say("Paid: the credits have arrived.");
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
    say("Payment sent; the credits appear once Stripe confirms it.");
  }

  button.addEventListener("click", async function () {
    button.disabled = true;
    say("Paying…");
    try {
      if (root.dataset.offline === "yes") {
        await payOffline();
      } else {
        await payWithStripe();
      }
      say("Payment accepted; waiting for Stripe's confirmation…");
      await waitForCredits();
    } catch (error) {
      say(error.message);
      button.disabled = false;
    }
  });
})();
