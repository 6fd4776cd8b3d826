"""The review app: a clinician reads the model's call on an X-ray, sees why, and accepts or corrects it."""
