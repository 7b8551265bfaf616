"""Loan-decision rule engine: declarative lending rules on durable_rules behind POST /decide."""
