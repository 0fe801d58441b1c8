"""Forms of the demo page."""

from django import forms


class GreetingForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="A name starting with “fail” makes the handler fail twice, to show retries.",
    )
    countdown = forms.IntegerField(
        min_value=0, max_value=3600, initial=0, help_text="Seconds before the task runs."
    )
    task_name = forms.RegexField(
        regex=r"^[a-zA-Z0-9_-]{1,500}$",
        required=False,
        help_text="Optional: a task name; adding it twice shows the de-duplication.",
    )


class PullTaskForm(forms.Form):
    payload = forms.CharField(max_length=1000)
    tag = forms.CharField(max_length=100, required=False)


class TextForm(forms.Form):
    text = forms.CharField(max_length=1000, initial="the quick fox jumps over the lazy fox")
