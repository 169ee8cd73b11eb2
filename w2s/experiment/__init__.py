"""The experiment as a plan: what runs, before anything runs.

- kinds.py: the stage kinds (what each trains, the result row it writes), `Stage` and each kind's record;
- keys.py: what enters a stage's content key, `KEY_VERSION`;
- plan.py: spec -> stages (`plan`), and how every command plans a run folder (`plan_run`);
- environment.py: what `auto` resolves to for a run folder, decided once and recorded;
- selection.py: the checkpoint selection rules and the validation split's rows;
- checks.py: the pre-run check (data, models, losses, sizes) before anything is written.

No torch at import: `w2s validate` and `--dry-run` plan without it.
"""
