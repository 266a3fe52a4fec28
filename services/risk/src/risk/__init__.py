"""duewise risk: payment-behaviour profiles, warning signs and an explainable score."""
