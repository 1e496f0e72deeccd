"""Hospital encounters (admissions and discharges): the events transition-of-care rules start from."""
