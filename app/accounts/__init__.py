"""Accounts: tenants, users, memberships, API keys, logins, passwords and their cryptography."""
