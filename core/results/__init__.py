"""Lab results in a patient's record and the education items assigned to a patient."""
