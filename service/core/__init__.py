"""The inference core: images, preprocessing, models, batching. No transport imports."""
