"""Channel adapters: each turns its own input into a RatingIn for portal.ratings.record."""
