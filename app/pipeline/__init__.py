"""The stream stages as pure functions and the records between them."""
