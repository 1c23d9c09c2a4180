"""The subscriber SDK and local stores."""
