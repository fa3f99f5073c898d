# The project's two commands. The logic lives in scripts/ so CI and people run the same thing.
.PHONY: demo test

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh
