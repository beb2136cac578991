"""Approvals URLs: the inbox under /approvals/, and the e-mail links (no login needed)."""

from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("list/", views.inbox_list, name="list"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/decide/", views.decide, name="decide"),
    path("verify/<str:token>/", views.verify_link, name="verify-link"),
    path("review/<str:token>/", views.review_link, name="review-link"),
]
