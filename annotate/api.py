"""REST API for labelling tools (session or basic auth): next task, submit a label, undo, export."""
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import exchange, selectors, services
from annotate.models import Assignment, PairwiseLabel
from core.models import Project
from core.roles import ANNOTATOR, ML_ENGINEER, QA, has_role


class IsAnnotator(permissions.BasePermission):
    message = "Only annotators can label."

    def has_permission(self, request, view):
        return has_role(request.user, ANNOTATOR)


class CanExport(permissions.BasePermission):
    message = "Exports are for ML engineers and QA."

    def has_permission(self, request, view):
        return has_role(request.user, ML_ENGINEER, QA)


class TaskSerializer(serializers.Serializer):
    assignment = serializers.IntegerField(help_text="id to send back with the label")
    kind = serializers.ChoiceField(choices=Assignment.Kind.choices)
    task = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    product = serializers.DictField()
    original = serializers.CharField(help_text="URL of the original product photo")
    a = serializers.CharField(required=False, help_text="pair: URL of generation A")
    b = serializers.CharField(required=False, help_text="pair: URL of generation B")
    image = serializers.CharField(required=False, help_text="image: URL of the generation")


class PairLabelSerializer(serializers.Serializer):
    assignment = serializers.IntegerField()
    choice = serializers.ChoiceField(choices=PairwiseLabel.Choice.choices)
    reason_tags = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    time_spent_ms = serializers.IntegerField(required=False, default=0, min_value=0)


class ImageLabelSerializer(serializers.Serializer):
    assignment = serializers.IntegerField()
    background_appropriate = serializers.BooleanField()
    product_intact = serializers.BooleanField()
    reason_tags = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    time_spent_ms = serializers.IntegerField(required=False, default=0, min_value=0)


LABEL_RESPONSE = inline_serializer("StoredLabel", {"id": serializers.IntegerField(), "created": serializers.BooleanField()})
ERROR = inline_serializer("Error", {"detail": serializers.CharField()})
QUEUE_PARAM = OpenApiParameter("queue", OpenApiTypes.STR, OpenApiParameter.PATH, enum=["pair", "image"])


def _error(exc: services.AnnotateError) -> Response:
    return Response({"detail": str(exc)}, status=exc.status)


def _check_queue(queue):
    if queue not in Assignment.Kind.values:
        raise services.NotFound(f"unknown queue {queue!r}; use 'pair' or 'image'")


class NextTaskView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsAnnotator]

    @extend_schema(
        summary="Claim the next item of a queue",
        parameters=[QUEUE_PARAM, OpenApiParameter("exclude", OpenApiTypes.STR,
                                                  description="comma-separated assignment ids already on screen")],
        responses={200: TaskSerializer, 204: OpenApiResponse(description="the queue is empty for you")},
    )
    def get(self, request, slug, queue):
        project = get_object_or_404(Project, slug=slug)
        try:
            _check_queue(queue)
            exclude = [int(x) for x in request.query_params.get("exclude", "").split(",") if x.strip()]
        except services.AnnotateError as exc:
            return _error(exc)
        except ValueError:
            return Response({"detail": "exclude must be comma-separated assignment ids"}, status=400)
        assignment = services.next_assignment(request.user, project, queue, exclude=exclude)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(selectors.task_payload(assignment))


class SubmitLabelView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsAnnotator]

    @extend_schema(
        summary="Store a label for a claimed item (idempotent: a repeat returns the stored label with 200)",
        parameters=[QUEUE_PARAM],
        request=PairLabelSerializer,
        responses={201: LABEL_RESPONSE, 200: LABEL_RESPONSE, 400: ERROR, 404: ERROR, 409: ERROR},
        description="queue=pair: {assignment, choice, reason_tags, time_spent_ms}; queue=image: "
                    "{assignment, background_appropriate, product_intact, reason_tags, time_spent_ms}.",
    )
    def post(self, request, slug, queue):
        project = get_object_or_404(Project, slug=slug)
        try:
            _check_queue(queue)
            serializer = (PairLabelSerializer if queue == "pair" else ImageLabelSerializer)(data=request.data)
            if not serializer.is_valid():
                return Response({"detail": _flatten(serializer.errors), "errors": serializer.errors}, status=400)
            data = serializer.validated_data
            if queue == "pair":
                label, created = services.submit_pair_label(
                    request.user, data["assignment"], data["choice"], data["reason_tags"], data["time_spent_ms"],
                    project=project)
            else:
                label, created = services.submit_image_label(
                    request.user, data["assignment"], data["background_appropriate"], data["product_intact"],
                    data["reason_tags"], data["time_spent_ms"], project=project)
        except services.AnnotateError as exc:
            return _error(exc)
        return Response({"id": label.pk, "created": created}, status=201 if created else 200)


def _flatten(errors) -> str:
    return "; ".join(f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in errors.items())


class UndoView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsAnnotator]

    @extend_schema(summary="Undo your last label in this queue; the item comes back to you",
                   parameters=[QUEUE_PARAM], request=None, responses={200: TaskSerializer, 404: ERROR})
    def post(self, request, slug, queue):
        project = get_object_or_404(Project, slug=slug)
        try:
            _check_queue(queue)
            assignment = services.undo_last_label(request.user, project, queue)
        except services.AnnotateError as exc:
            return _error(exc)
        return Response(selectors.task_payload(assignment))


class FormatIsOurs(DefaultContentNegotiation):
    """`?format=` names the export format here, not DRF's renderer; errors are rendered as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ExportView(APIView):
    permission_classes = [permissions.IsAuthenticated, CanExport]
    content_negotiation_class = FormatIsOurs

    @extend_schema(
        summary="Export labels (JSONL, CSV, or HFPC JSONL for single-image labels)",
        parameters=[OpenApiParameter("queue", OpenApiTypes.STR, enum=["pair", "image"]),
                    OpenApiParameter("format", OpenApiTypes.STR, enum=list(exchange.FORMATS))],
        responses={(200, "application/jsonl"): OpenApiTypes.STR, (200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request, slug):
        project = get_object_or_404(Project, slug=slug)
        queue = request.query_params.get("queue", "pair")
        fmt = request.query_params.get("format", "jsonl")
        lines = exchange.export_lines(project, queue, fmt)
        try:
            first = next(lines, "")  # validates the arguments before the response starts
        except services.AnnotateError as exc:
            return _error(exc)
        extension = "csv" if fmt == "csv" else "jsonl"

        def stream():
            yield first
            yield from lines

        response = StreamingHttpResponse(stream(), content_type="text/csv" if fmt == "csv" else "application/jsonl")
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-{queue}-labels.{fmt}.{extension}"'
        return response
