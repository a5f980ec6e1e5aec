"""Quality: how several answers to one item become one target (aggregation); gold checks and reviews come here."""
