from django import forms

from core.ml.images import ImageRejected
from core.services.storage import validate_image


class ProductUploadForm(forms.Form):
    title = forms.CharField(max_length=300)
    category = forms.CharField(max_length=120, help_text="what the product is, e.g. 'orange juice carton'")
    brand = forms.CharField(max_length=120, required=False)
    image = forms.FileField(help_text="JPEG, PNG or WebP on a plain background")

    def clean_image(self):
        upload = self.cleaned_data["image"]
        data = upload.read()
        try:
            validate_image(data, upload.name)
        except ImageRejected as exc:
            raise forms.ValidationError(str(exc))
        self.image_bytes = data
        return upload
