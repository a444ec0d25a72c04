"""Settings, the model registry and the job/event contract shared by the front and the workers."""
