"""Specs shipped with the package: `w2s run example:<name>` (`w2s list examples`)."""
