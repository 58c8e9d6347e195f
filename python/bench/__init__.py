"""`make bench`: what users pay as the warehouse grows. Not part of the runtime package."""
