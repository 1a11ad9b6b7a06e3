import json

from django import forms

from generation.services import MAX_CANDIDATES


class GenerateForm(forms.Form):
    """Start generation: a backend from the registry (unavailable ones are refused with their reason)."""

    backend = forms.ChoiceField(widget=forms.RadioSelect)
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)
    num_candidates = forms.IntegerField(label="Candidates", min_value=1, max_value=MAX_CANDIDATES, initial=3)
    with_parallax = forms.BooleanField(label="Parallax video", required=False, initial=True)
    params = forms.CharField(label="Backend params (JSON object)", required=False, initial="{}",
                             widget=forms.TextInput(attrs={"size": 40, "placeholder": '{"scale": 0.9}'}))

    def __init__(self, *args, backends: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.backends = backends
        self.fields["backend"].choices = [(b["name"], f"{b['name']} {b['version']}") for b in backends]
        first_ok = next((b["name"] for b in backends if b["available"]), None)
        if first_ok:
            self.fields["backend"].initial = "copy-paste" if any(
                b["name"] == "copy-paste" and b["available"] for b in backends) else first_ok

    def clean_backend(self):
        name = self.cleaned_data["backend"]
        info = next(b for b in self.backends if b["name"] == name)
        if not info["available"]:
            raise forms.ValidationError(f"{name} is unavailable: {info['reason']}")
        return name

    def clean_params(self):
        text = (self.cleaned_data.get("params") or "").strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}")
        if not isinstance(value, dict):
            raise forms.ValidationError("params must be a JSON object, e.g. {\"scale\": 0.9}")
        return value
