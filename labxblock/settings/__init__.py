"""Settings hooks that edx-platform's plugin mechanism calls."""
