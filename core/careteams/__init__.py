"""A patient's care team: the staff and outside people who look after them."""
