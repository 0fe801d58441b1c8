"""Forms of the scenario pages."""

from django import forms

#: Uploads larger than this are refused by the form (the file is kept in the database).
MAX_UPLOAD_BYTES = 5 * 1024 * 1024


class UploadForm(forms.Form):
    file = forms.FileField(help_text="A CSV with the columns date,region,product,units,unit_price.")

    def clean_file(self):
        file = self.cleaned_data["file"]
        if file.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"The file is over {MAX_UPLOAD_BYTES // 1024 // 1024} MB.")
        return file


class ScoreForm(forms.Form):
    game = forms.RegexField(
        regex=r"^[a-z0-9-]{1,100}$",
        initial="chess",
        help_text="Lower-case letters, digits and dashes: the task's tag.",
    )
    player = forms.CharField(max_length=100)
    points = forms.IntegerField(min_value=-1000, max_value=1000, initial=10)


class CallableForm(forms.Form):
    KINDS = [
        ("function", "count_words(text): a module-level function"),
        ("raises", "average([]): a function that raises ZeroDivisionError"),
        ("method", "Invoice(...).total(amounts): a bound method"),
        ("instance", "Greeter('Hello')(name): a callable instance"),
        ("django-task", "shout.enqueue(text): a task of Django's Tasks framework"),
    ]
    kind = forms.ChoiceField(choices=KINDS, widget=forms.RadioSelect, initial="function")
    text = forms.CharField(max_length=1000, initial="the quick fox jumps over the lazy fox")
    countdown = forms.IntegerField(
        min_value=0, max_value=3600, initial=0, help_text="Seconds the task waits before it runs."
    )
