"""People: accounts, invitations, roles, and the glossary they teach."""
