"""The parts of `w2s run`: `store` (the stage-folder format and its file protocol), `inputs` (what a
stage reads), `evaluation` (what a classifier stage reports), `stages` (one class per stage kind).
`w2s.runner` puts them together."""
